"""Pure scheduling data: problems, schedules and their validation. Imports nothing above it."""
