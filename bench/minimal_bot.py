"""The bot a developer writes first, measured beside ours by the replies benchmark (bench/replies.py).

python-telegram-bot's `ConversationHandler` with its state in memory and no database: /start asks
for the admission number, a registered number gets a 6-digit code by SMS (the Twilio Messages API,
in the background as ours sends it) and the same words as ours, the right code gets the
confirmation and the patient's status card, and /status then shows the card again. Long polling, PTB's defaults (one update at a time).

    python -m bench.minimal_bot

Settings from the environment: TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL, TWILIO_API_BASE_URL,
TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_SMS_FROM, and BENCH_ADMISSIONS: how many of the
patients of bench/admissions.py are registered. Stops on SIGTERM.
"""

from __future__ import annotations

import html
import os
import re
import secrets

import httpx
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CommandHandler, ContextTypes, ConversationHandler, MessageHandler, filters

from bench.admissions import Patient, by_mobile, hospital_name

NUMBER, CODE, VERIFIED = range(3)
DIGITS = re.compile(r"[0-9]")
CODE_BUTTONS = InlineKeyboardMarkup([
    [InlineKeyboardButton("Send a new code", callback_data="resend")],
    [InlineKeyboardButton("Change number", callback_data="change_number")],
])  # fmt: skip


def card(patient: Patient) -> str:
    """The status card, about as long as ours."""
    return (
        f"<b>{html.escape(patient.patient_name)}</b>\n{hospital_name(patient.hospital)}, {patient.ward}, bed {patient.bed}\n\n"
        f"Condition: <b>{patient.condition.title()}</b>\nCare area: {patient.care_area.upper()}\n"
        f"Breathing support: {patient.support}\nSpO2 {patient.spo2}%, pulse {patient.pulse}/min\n\n"
        "Last updated 3 hours ago."
    )


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    await update.effective_message.reply_text(
        "Welcome to Ward Watch. I can tell you how your relative in hospital is doing, and message you "
        "whenever the hospital records a change.\n\nPlease send the mobile number that was written down "
        "at admission, for example 98300 12345.",
        reply_markup=ReplyKeyboardMarkup(
            [[KeyboardButton("Share my number", request_contact=True)]], resize_keyboard=True, one_time_keyboard=True
        ),
    )
    return NUMBER


async def number(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    typed = "".join(DIGITS.findall(update.effective_message.text or ""))
    mobile = f"+91{typed[-10:]}"
    patients: dict[str, Patient] = context.bot_data["patients"]
    if mobile in patients:
        code = f"{secrets.randbelow(10**6):06d}"
        context.user_data["pending"] = (mobile, code)
        context.application.create_task(send_sms(context.bot_data["twilio"], mobile, code))
    await update.effective_message.reply_text(
        f"If {typed[-10:-5]} {typed[-5:]} is the number given at admission, a 6-digit code is on its way to it "
        "by SMS. Please type the code here. It is valid for 10 minutes.",
        reply_markup=CODE_BUTTONS,
    )
    return CODE


async def send_sms(twilio: httpx.AsyncClient, mobile: str, code: str) -> None:
    form = {"To": mobile, "From": os.environ["TWILIO_SMS_FROM"], "Body": f"Your Ward Watch code is {code}."}
    response = await twilio.post(f"/2010-04-01/Accounts/{os.environ['TWILIO_ACCOUNT_SID']}/Messages.json", data=form)
    response.raise_for_status()


async def code(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    mobile, expected = context.user_data.get("pending", ("", ""))
    if "".join(DIGITS.findall(update.effective_message.text or "")) != expected:
        await update.effective_message.reply_text("That code is not right.", reply_markup=CODE_BUTTONS)
        return CODE
    await update.effective_message.reply_text(
        "Thank you, your number is confirmed. I will message you here whenever the hospital records a change "
        "for this patient. Send /stop to stop these messages."
    )
    context.user_data["verified"] = mobile
    return await status(update, context)


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    patient = context.bot_data["patients"][context.user_data["verified"]]
    await update.effective_message.reply_text(card(patient), parse_mode=ParseMode.HTML)
    return VERIFIED


def main() -> None:
    twilio = httpx.AsyncClient(
        base_url=os.environ["TWILIO_API_BASE_URL"],
        auth=(os.environ["TWILIO_ACCOUNT_SID"], os.environ["TWILIO_AUTH_TOKEN"]),
    )
    application = (
        Application.builder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ["TELEGRAM_API_BASE_URL"])
        .post_shutdown(lambda _application: twilio.aclose())
        .build()
    )
    application.bot_data.update(patients=by_mobile(int(os.environ["BENCH_ADMISSIONS"])), twilio=twilio)
    text = filters.TEXT & ~filters.COMMAND
    application.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                NUMBER: [MessageHandler(text, number)],
                CODE: [MessageHandler(text, code)],
                VERIFIED: [CommandHandler("status", status)],
            },
            fallbacks=[CommandHandler("start", start)],
        )
    )
    application.run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
