"""Qt widgets of the studio; each binds to studio.state.StudioState."""
