from gateway.sim.cli import main

main()
