"""The demo: a sample internal tool that knows nothing of Clerk, protected by the gateway."""
