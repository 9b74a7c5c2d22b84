"""One request through a `PolicyService` in-process, its batcher started and stopped around it."""

import asyncio
import time


def act_once(service, payload: dict):
    """The service's answer to `payload` (what `service.act` returns second)."""

    async def main():
        await service.batcher.start()
        try:
            return (await service.act(payload, time.monotonic(), time.time()))[1]
        finally:
            await service.batcher.stop()

    return asyncio.run(main())
