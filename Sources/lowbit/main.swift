import LowbitCLI

Lowbit.runFromCommandLine()
