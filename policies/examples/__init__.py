"""Example third-party policy parts, loaded like any plugin: `module:Class` in YAML."""
