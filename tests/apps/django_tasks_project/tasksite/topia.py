"""The project's topia: Django tasks and native actions share it."""

from queuetopia import Queuetopia

topia = Queuetopia(scope="tasksite", lock_ttl=5.0)


@topia.action("native")
def native(n: int) -> int:
    return n
