"""State shared by every replica, in Redis: the connection, the revocation feed, cross-replica refreshes.

Optional: without `GATEWAY_REDIS_URL` nothing here is built and every process keeps its own state.
With it, the hot path still never waits for Redis: the deny list and the per-process single-flight
stay in memory, and Redis only carries what one replica learnt to the others. While Redis is away
each replica serves from what it holds and catches up on reconnection (`connection.RedisConnection`).
"""
