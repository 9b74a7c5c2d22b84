"""CLI subcommands: thin entry points over the library, one module each."""
