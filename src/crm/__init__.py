"""The customer record: customers and their numbers, services behind each DNIS, users, and the call
log written from the bus. The only package that talks to the database (SQLAlchemy, Alembic).

Roles inside, as in every capability: ``model`` (tables), ``service`` (operations and the call
classifier), ``handlers`` (the call log writer on the bus), ``api`` (HTTP routes), ``db`` (engines
and migrations).
"""

# Every table must be on ``crm.model.Base.metadata`` wherever the schema is built or compared.
from crm import agents as agents
from crm import campaigns as campaigns
from crm import recordings as recordings
