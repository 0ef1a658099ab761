"""Skills-based routing: agents' states, waiting calls, and which agent takes which call.

``routing.model`` (pure types and the agent state machine), ``routing.policy`` (pure decisions) and
``routing.state`` (the live-state interface, in process or in Redis). See docs/routing.md.
"""
