"""The offline stack (not deployed): local Functions host, Azurite runner, later the simulators."""
