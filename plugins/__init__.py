"""Built-in plugins: the timeout controller, the recovery journal and named sessions."""
