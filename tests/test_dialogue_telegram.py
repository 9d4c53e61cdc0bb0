"""The relative's dialogue on Telegram where it asks before it acts: /forget asks with two buttons,
and only "Yes, delete" deletes; the chat keeps the language it chose. The real python-telegram-bot
against the fake Bot API, as in tests/test_telegram.py."""

from __future__ import annotations

from tests.test_telegram import (  # noqa: F401 (bot, fake, start_bot, twilio: fixtures)
    WELCOME,
    Relative,
    bot,
    fake,
    start_bot,
    twilio,
    verified,
)

QUESTION = (
    "Delete everything about this chat: the number you confirmed, the patients you follow and their "
    "alerts? To see a patient again you would need a new code."
)
DONE = "Done: this chat's number, confirmation and alerts are deleted. Send /start to begin again."


async def test_forget_asks_with_buttons_and_only_yes_deletes(bot, fake):
    relative = Relative(fake, fake.user("en"))
    await verified(bot, relative)

    [question] = await relative.command("/forget")
    assert question.plain == QUESTION
    assert question.inline_buttons == [("Yes, delete", "forget:yes"), ("No, keep", "forget:no")]

    kept, hint = await relative.press("forget:no", question, expect=2)
    assert kept.plain == "Nothing was deleted."
    assert hint.plain == "Send /status to see the latest condition, or /help for everything I can do."
    assert (await bot.chat(relative.user)).state == "verified"
    assert len(await relative.command("/status", expect=2)) == 2

    [done] = await relative.press("forget:yes", question)
    assert done.plain == DONE
    assert await bot.chat(relative.user) is None


async def test_after_forget_the_chat_keeps_the_language_it_chose(bot, fake):
    relative = Relative(fake, fake.user("en"))  # the Telegram app is in English
    await verified(bot, relative)
    [menu] = await relative.command("/language")
    await relative.press("lang:bn", menu, expect=2)

    [question] = await relative.command("/forget")
    assert question.plain.startswith("এই চ্যাটের সব কিছু মুছে ফেলবেন")
    assert question.inline_buttons == [("হ্যাঁ, মুছে ফেলুন", "forget:yes"), ("না, রেখে দিন", "forget:no")]
    [done] = await relative.press("forget:yes", question)
    bengali = bot.services.catalogues.get("bn")
    assert done.plain == bengali.gettext(DONE) != DONE
    assert await bot.chat(relative.user) is None

    [welcome] = await relative.command("/start")
    assert welcome.plain.startswith(bengali.gettext(WELCOME))
    assert (await bot.chat(relative.user)).language == "bn"
