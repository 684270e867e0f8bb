"""Built-in recipes, resolvable by name (`--recipe mobile`)."""
