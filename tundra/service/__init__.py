"""Running Tundra as an OS service: unit/plist rendering, install, logs, doctor, diagnose."""
