"""The dispatcher: consumes accepted jobs and sends every recipient through the provider."""
