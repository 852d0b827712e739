"""The command line: typer commands over the headless core, and the generator of its reference docs."""
