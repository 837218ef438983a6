"""The evaluation subcommands, one module each: ``embed``, ``track``, ``score_variants`` and
``probe`` define ``build_parser()``, a body ``run(args, parser)`` and ``main(argv) -> exit
code``; :mod:`.common` holds the options, checks and exit-code contract they share."""
