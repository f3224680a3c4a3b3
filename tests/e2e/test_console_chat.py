"""The console adapter on a real database, read as a chat transcript."""


async def test_a_newcomer_tops_up_and_reads_the_ledger(console):
    tester, deps = console
    chat = tester.chat(deps)
    assert "Added 100 credits (¥10.00)" in await tester.push(chat, "/topup me 100 first credits")
    assert await tester.push(chat, "/balance") == "Your balance: 100 credits (¥10.00)."
    history = await tester.push(chat, "/history")
    assert "top-up +100 · balance 100 · first credits" in history


async def test_price_buttons_print_as_numbers_and_pressing_edits(console):
    tester, deps = console
    chat = tester.chat(deps)
    first = await tester.push(chat, "/price")
    assert first.splitlines()[-1] == "  [1] Show 10 s prices"
    pressed = await tester.push(chat, "1")
    assert pressed.splitlines()[0] == "~ message 1 edited:"
    assert "• Master · 1080p · 200 credits (¥20.00) · ~7 min · image or text only" in pressed
    assert pressed.splitlines()[-1] == "  [2] Show 5 s prices"
    assert "5 s clip" in await tester.push(chat, "2")
    assert await tester.push(chat, "99") == (
        "There is no button 99. Type the number shown in [brackets] beside a button."
    )
    await tester.push(chat, "/balance")  # a new command retires the view's buttons
    assert await tester.push(chat, "1") == (
        "Button 1 was on an earlier message and no longer works. Send the command again."
    )


async def test_a_member_cannot_top_up_and_a_moderator_can_top_them_up(console):
    tester, deps = console
    alice = tester.chat(deps, user="alice")
    local = tester.chat(deps)
    assert await tester.push(alice, "/topup me 100") == "Only moderators can do that."
    assert await tester.push(alice, "/balance") == "Your balance: 0 credits (¥0.00)."
    added = await tester.push(local, "/topup alice 25 thanks")
    assert "Added 25 credits (¥2.50) to alice (console:alice)." in added
    assert await tester.push(alice, "/balance") == "Your balance: 25 credits (¥2.50)."
    assert await tester.push(local, "/topup bob 5") == (
        "I don't know the user bob. They need to talk to me once (any command) before their"
        " wallet exists."
    )


async def test_chinese_console(console):
    tester, deps = console
    chat = tester.chat(deps, lang="zh_CN.UTF-8")
    assert "已为" in await tester.push(chat, "/topup me 35 测试")
    assert await tester.push(chat, "/balance") == "你的余额：35 灵感值（¥3.50）。"
    assert (
        "你的余额：35 灵感值（¥3.50），可生成 1 条标准、1 条高品质、0 条大师。"
        in await tester.push(chat, "/price")
    )


async def test_hostile_lines_get_messages_and_change_nothing(console):
    tester, deps = console
    chat = tester.chat(deps)
    await tester.push(chat, "/topup me 10")
    for line in [
        "",
        "   ",
        "\x00\x1b[2J",
        "x" * 100_000,
        "/price 7",
        "/topup me 0",
        "/topup me -1",
        "/topup me 99999999999999999999999999",
        "/history -1",
        "/history 100000",
        "/😀",
        "/topup me 5 " + "r" * 500,
        "no slash",
    ]:
        await tester.push(chat, line)
    assert await tester.push(chat, "/balance") == "Your balance: 10 credits (¥1.00)."
    text = "\n".join(tester.output)
    assert "Traceback" not in text and "Error" not in text


async def test_emoji_and_control_characters_in_reasons_are_stored_cleanly(console):
    tester, deps = console
    chat = tester.chat(deps)
    await tester.push(chat, "/topup me 7 👩‍👩‍👧 party\x07\x1b[31m 中文")
    history = await tester.push(chat, "/history 1")
    assert history.endswith("· 👩‍👩‍👧 party[31m 中文")
