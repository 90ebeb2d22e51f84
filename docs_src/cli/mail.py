from queuetopia import Queuetopia

topia = Queuetopia(scope="mail")


@topia.action("send_mail")
def send_mail(to: str, body: str = "") -> None: ...
