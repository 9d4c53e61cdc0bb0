"""Local fakes of the platforms' HTTP APIs, each served by uvicorn on 127.0.0.1 at a free port: the
Telegram Bot API (`tests.fakes.telegram`) and the Twilio REST API (`tests.fakes.twilio`). The real
client libraries, python-telegram-bot and twilio, talk to them over HTTP, so that the tests and the
benchmarks (bench/) go through everything but the network."""
