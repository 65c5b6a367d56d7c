from mnistctl.cli.commands import main

main()
