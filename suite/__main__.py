from suite.programs import probe

probe()
