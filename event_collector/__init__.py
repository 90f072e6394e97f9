"""The event collector (port 5000): validates /interact and publishes it to RabbitMQ with confirms."""
