"""The search: strategies (ask/tell), evaluators, executors, the journal and the run loop."""
