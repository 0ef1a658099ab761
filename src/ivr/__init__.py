"""IVR self-service: flows as data per service (DNIS), a pure engine that runs them, and prompts.

Roles inside: ``model`` (pure: node kinds, prompt table, flow validation), ``flow`` (pure: the engine,
a state machine from call context and caller input to the next step), ``files`` (flow files on disk),
``prompts`` (sound files: espeak-ng synthesis and uploads converted with pydub). The FastAGI adapter
that performs the engine's steps in Asterisk comes with the dialplan wiring. docs/ivr.md explains how
to write a flow.
"""
