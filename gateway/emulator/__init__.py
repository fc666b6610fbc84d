"""A local emulator of Clerk's Frontend and Backend APIs, for the demo, development and tests."""
