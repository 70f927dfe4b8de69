"""One module per `tfmirror` command: `arguments(parser)` declares its options, `run(config,
args)` runs it. tfmirror.cli loads only the one a command line names."""
