"""Chat text to commands; every bad input becomes a translated UserError."""

import pytest

from bot.commands import (
    Balance,
    Buy,
    BuyPack,
    CompareTiers,
    Gen,
    Help,
    History,
    Price,
    Refund,
    RefundPurchase,
    Start,
    TopUp,
)
from bot.errors import UserError
from bot.i18n import Translator
from bot.parsing import MAX_LINE, parse_action, parse_command
from bot.replies import Text


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/price", Price()),
        ("/price 10", Price(10)),
        ("/price 5s", Price(5)),
        ("/PRICE@klingbot 10", Price(10)),
        ("  /price\t5  ", Price(5)),
        ("/balance", Balance()),
        ("/balance @alice", Balance("@alice")),
        ("/history", History(10)),
        ("/history 50", History(50)),
        ("/topup me 100", TopUp("me", 100, "")),
        ("/topup @bob 5 gift for the 🎉 contest", TopUp("@bob", 5, "gift for the 🎉 contest")),
        ("/topup me 100 bad\x00\x07char\x1b[31m", TopUp("me", 100, "badchar[31m")),
        ("/help", Help()),
        ("/start", Start()),
        ("/buy", Buy()),
        ("/refund 3F2A9C1D", Refund("3f2a9c1d", "")),
        ("/refund 3f2a9c1d force", Refund("3f2a9c1d", "force")),  # jobs take no force
        ("/refund stxAbC-12_x", RefundPurchase("stxAbC-12_x", "", False)),
        ("/refund stxAbC asked nicely", RefundPurchase("stxAbC", "asked nicely", False)),
        ("/refund stxAbC asked nicely FORCE", RefundPurchase("stxAbC", "asked nicely", True)),
        ("/refund stxAbC force", RefundPurchase("stxAbC", "", True)),
        ("/refund stxAbC forced out", RefundPurchase("stxAbC", "forced out", False)),
    ],
)
def test_commands(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("", "error.empty"),
        ("   \x00 \x07 ", "error.empty"),
        ("hello", "error.not_a_command"),
        ("/nope", "error.unknown_command"),
        ("/price 7", "error.duration"),
        ("/price ten", "error.duration"),
        ("/price -5", "error.duration"),
        ("/history -1", "error.history_count"),
        ("/history 0", "error.history_count"),
        ("/history 100000", "error.history_count"),
        ("/history 9" * 3, "error.history_not_number"),
        ("/history x", "error.history_not_number"),
        ("/topup", "error.topup_usage"),
        ("/topup me", "error.topup_usage"),
        ("/topup me 0", "error.amount_positive"),
        ("/topup me 000", "error.amount_positive"),
        ("/topup me -5", "error.amount_positive"),
        ("/topup me abc", "error.amount_not_number"),
        ("/topup me 1e3", "error.amount_not_number"),
        ("/topup me 10.5", "error.amount_not_number"),
        ("/topup me ١٠٠", "error.amount_not_number"),
        ("/topup me 99999999999999999999999", "error.amount_too_large"),
        ("/topup me " + "9" * 4000, "error.amount_too_large"),
        ("/topup me 5 " + "x" * 201, "error.reason_too_long"),
        ("/refund", "error.refund_usage"),
        ("/refund stx/../x", "error.refund_usage"),
        ("/refund stxAbC " + "x" * 201 + " force", "error.reason_too_long"),
        ("/" + "x" * (MAX_LINE + 1), "error.too_long"),
    ],
)
def test_bad_input_is_a_translated_user_error(line, key):
    with pytest.raises(UserError) as error:
        parse_command(line)
    assert error.value.key == key
    for locale in ("en", "zh-CN"):
        message = Translator(locale)(Text(error.value.key, error.value.params))
        assert message and "Traceback" not in message and len(message) < 300


def test_unknown_command_names_are_cut_short():
    with pytest.raises(UserError) as error:
        parse_command("/" + "a" * 1000)
    assert len(error.value.params["command"]) <= 33


def test_button_actions():
    assert parse_action("price:10") == Price(10)
    assert parse_action("buy:500:230") == BuyPack(500, 230)
    assert parse_action("cmp:0a1b2c3d4e5f:0.2") == CompareTiers("0a1b2c3d4e5f", (0, 2))
    assert parse_action("cmp:0a1b2c3d4e5f:0.1.2") == CompareTiers("0a1b2c3d4e5f", (0, 1, 2))
    rejected = ("cmp:0a1b2c3d4e5f:0", "cmp:0a1b2c3d4e5f:", "cmp:0a1b:0+1", "cmp:XYZW:0.1")
    for action in (
        "price:7",
        "price:",
        "bogus",
        "",
        "buy:",
        "buy:5",
        "buy:a:b",
        "buy:1:2:3",
        *rejected,
    ):
        with pytest.raises(UserError):
            parse_action(action)


def test_compare_takes_gen_arguments():
    assert parse_command("/compare a robot waves --duration 10") == Gen(
        "a robot waves", duration_s=10, compare=True
    )
    assert parse_command("/gen a robot waves") == Gen("a robot waves")
