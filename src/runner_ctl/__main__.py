from runner_ctl.cli import main

main()
