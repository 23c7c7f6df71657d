"""The lane page: what the technician at the lane sees, served by the agent."""
