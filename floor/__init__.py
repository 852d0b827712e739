"""The floor every layer may use: errors and exit codes, durable writes, states, the run folder, the event protocol."""
