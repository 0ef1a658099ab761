"""The tests' name for the sandbox's simulated traffic: SIPp callers and agents' phones now live in
``sandbox.traffic`` (the demo drives the PBX with them too); this module re-exports its public API."""

from sandbox.traffic import (
    SCENARIOS,
    SIPP,
    VOICE,
    Caller,
    SippProcess,
    SippResult,
    call,
    call_with_keys,
    caller_scenario,
    free_udp_port,
    start_agent_phone,
    start_callers,
    start_ringing_phone,
)

__all__ = [
    "SCENARIOS",
    "SIPP",
    "VOICE",
    "Caller",
    "SippProcess",
    "SippResult",
    "call",
    "call_with_keys",
    "caller_scenario",
    "free_udp_port",
    "start_agent_phone",
    "start_callers",
    "start_ringing_phone",
]
