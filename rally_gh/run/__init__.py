"""A run of the team (SPEC sections 4 and 7), as a pipeline of phases."""
