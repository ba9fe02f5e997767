"""The `rodinhd` command line: one module per verb, each with `register(subparsers)`."""
