"""The Litestar edge: runs the core for each request, performs what it asks, proxies to the app."""
