"""The relative's dialogue on WhatsApp where it asks before it acts: /forget asks with a numbered
choice, and only "1" (Yes, delete) deletes; the chat keeps the language it chose. Twilio's signed
webhooks into the real web app, the replies through the fake Twilio, as in tests/test_whatsapp.py."""

from __future__ import annotations

from tests.test_whatsapp import (  # noqa: F401 (fake, start, wa: fixtures)
    PATIENT,
    TYPED,
    WELCOME,
    fake,
    start,
    wa,
)

DONE = "Done: this chat's number, confirmation and alerts are deleted. Send /start to begin again."


async def test_forget_asks_with_a_numbered_choice_and_keeps_the_language(wa):
    [welcome] = await wa.send("नमस्ते")  # Devanagari: the chat is in Hindi
    await wa.send(TYPED)
    confirmation, card = await wa.send(wa.code_for())
    assert PATIENT in card

    [question] = await wa.send("/forget")
    assert question == (
        "इस चैट का सब कुछ मिटा दें: आपका पुष्टि किया गया नंबर, जिन मरीज़ों की खबर आप ले रहे हैं वे और उनकी "
        "सूचनाएँ? मरीज़ का हाल फिर से देखने के लिए नया कोड चाहिए होगा।\n\n1. हाँ, मिटा दें\n2. नहीं, रहने दें"
    )
    kept, _hint = await wa.send("2")
    assert kept == "कुछ भी नहीं मिटाया गया।"
    assert (await wa.chat()).state == "verified"

    await wa.send("/forget")
    [done] = await wa.send("1")
    assert done == wa._(DONE, "hi") != DONE
    assert await wa.chat() is None

    # Written in Latin letters, the next message still gets the welcome in Hindi.
    [again] = await wa.send("Hello")
    assert again == welcome and again.startswith(wa._(WELCOME, "hi"))
    assert (await wa.chat()).language == "hi"
