from cli.main import rsms

rsms()
