from helpers.cli import main

main()
