import email
from email import policy

from django.core.mail import EmailMessage

from crisisdesk.mail import EmlFileBackend


def test_it_keeps_each_message_as_an_eml_file_a_mail_program_can_open(tmp_path):
    backend = EmlFileBackend(file_path=tmp_path)
    messages = [
        EmailMessage("דליפת מידע: עדכון", "Ενημέρωση για τους πελάτες", to=["a@example.test"]),
        EmailMessage("Második", "Árvíztűrő tükörfúrógép", to=["b@example.test"]),
    ]
    assert backend.send_messages(messages) == 2

    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 2
    parsed = [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    subjects = {m["Subject"] for m in parsed}
    assert subjects == {"דליפת מידע: עדכון", "Második"}
    bodies = {m.get_content().strip() for m in parsed}
    assert "Árvíztűrő tükörfúrógép" in bodies
    assert not list(tmp_path.glob(".*.tmp"))
