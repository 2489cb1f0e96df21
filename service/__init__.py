"""effft's service: the CLI (typer), and the HTTP job API, job store and scheduler.

Heavy imports (database, Ray) stay inside the commands that need them, so `effft plan` starts fast
on the base install.
"""
