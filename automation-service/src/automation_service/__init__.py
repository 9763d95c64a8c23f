"""automation-service: scheduled, event and conditional automations, their executions,
and the queue of `automated` tasks its action registry works through."""
