"""Built-in hardware target profiles, resolvable by name (`--target x86_vnni`)."""
