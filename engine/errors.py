"""Errors that describe a user's mistake (bad input, bad file): shown as one clear line, never a traceback."""


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and, where possible, what to do."""


class Cancelled(Exception):
    """Long work (sampling, rendering) was cancelled by its caller's callback; nothing half-written is left."""


class GenerationFailed(UserError):
    """Sampling produced NaN or infinite values (a diverged model or sampler): no avatar is made, so nothing can
    be saved or added to a library; the message names the stage and the settings to change."""
