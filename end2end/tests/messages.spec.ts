import {
  test,
  expect,
  channelHeading,
  channelLink,
  chooseName,
  composer,
  createChannel,
  messageLog,
  messageWithText,
  openChannel,
  postManyViaApi,
  sendMessage,
  uniqueChannel,
  uniqueSuffix,
  waitForHydration,
} from './helpers';

test.describe('messages', () => {
  test('a message Alice sends appears live for Bob with her name and a time', async ({
    newUser,
  }) => {
    const channel = uniqueChannel('live');
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    await createChannel(alice.page, channel);

    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    await openChannel(bob.page, channel);
    // A marker that a reload would wipe out.
    await bob.page.evaluate(() => ((window as unknown as { __noReload: boolean }).__noReload = true));

    const text = `hello bob ${uniqueSuffix()}`;
    await sendMessage(alice.page, text);

    const seenByBob = messageWithText(bob.page, text);
    await expect(seenByBob).toHaveCount(1);
    await expect(seenByBob.locator('.author')).toHaveText(alice.name);
    await expect(seenByBob.locator('.body')).toHaveText(text);
    await expect(seenByBob.locator('time')).toHaveCount(1);
    expect(
      await bob.page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload),
    ).toBe(true);

    // Alice sees her own message too.
    await expect(messageWithText(alice.page, text)).toHaveCount(1);
  });

  test('Enter sends and Shift+Enter starts a new line', async ({ page }) => {
    const channel = uniqueChannel('lines');
    await chooseName(page, `Lines ${uniqueSuffix()}`);
    await createChannel(page, channel);

    const box = composer(page);
    await box.click();
    await page.keyboard.type('first line');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('second line');

    // Shift+Enter did not send: the text is still in the composer, on two lines.
    await expect(box).toHaveValue('first line\nsecond line');
    await expect(messageLog(page).locator('li.message')).toHaveCount(0);

    await page.keyboard.press('Enter');
    await expect(box).toHaveValue('');

    const sent = messageWithText(page, 'first line');
    await expect(sent).toHaveCount(1);
    const body = sent.locator('.body');
    await expect(body).toHaveText(/first line\s+second line/);
    expect((await body.textContent())?.trim()).toBe('first line\nsecond line');
    // The line break is rendered, so the body is two lines tall.
    expect((await body.innerText()).trim().split('\n')).toEqual(['first line', 'second line']);
  });

  test('a channel shows its latest 100 messages, oldest at the top', async ({ newUser }) => {
    test.setTimeout(90_000);
    const channel = uniqueChannel('many');
    // One person may not post 105 messages in a burst (rate limit), so three take turns.
    const busy = await newUser(`Busy ${uniqueSuffix()}`);
    const others = [await newUser(`Chatty ${uniqueSuffix()}`), await newUser(`Loud ${uniqueSuffix()}`)];
    const { page } = busy;
    await createChannel(page, channel);

    await postManyViaApi([busy, ...others], channel, 105, (i) => `msg ${i}`);

    await page.reload();
    await waitForHydration(page);

    const items = messageLog(page).locator('li.message');
    await expect(items).toHaveCount(100);
    await expect(items.first().locator('.body')).toHaveText('msg 6');
    await expect(items.last().locator('.body')).toHaveText('msg 105');
  });

  test('HTML in messages and names is shown as text, never run', async ({ page }) => {
    const dialogs: string[] = [];
    page.on('dialog', async (dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      await dialog.dismiss();
    });

    const html = '<img src=x onerror=alert(1)>';
    const channel = uniqueChannel('xss');
    await chooseName(page, html);
    await createChannel(page, channel);

    await sendMessage(page, html);

    const checkRenderedAsText = async () => {
      const message = messageWithText(page, html);
      await expect(message).toHaveCount(1);
      await expect(message.locator('.body')).toHaveText(html);
      await expect(message.locator('.author')).toHaveText(html);
      await expect(messageLog(page).locator('img')).toHaveCount(0);
    };

    // As rendered live in the browser...
    await checkRenderedAsText();
    // ...and as rendered by the server.
    await page.reload();
    await waitForHydration(page);
    await checkRenderedAsText();
    await expect(page.locator('header').getByTestId('me-name')).toHaveText(html);

    expect(dialogs, 'no script from a message or a name may run').toEqual([]);
  });

  test('the cursor is in the message box when a channel opens', async ({ page }) => {
    const first = uniqueChannel('focus');
    const second = uniqueChannel('focus');
    await chooseName(page, `Focus ${uniqueSuffix()}`);

    await createChannel(page, first);
    await expect(composer(page)).toBeFocused();

    await createChannel(page, second);
    await expect(composer(page)).toBeFocused();

    // Move focus away, then open a channel from the sidebar.
    await channelLink(page, first).focus();
    await expect(composer(page)).not.toBeFocused();
    await channelLink(page, first).click();
    await expect(channelHeading(page, first)).toBeVisible();
    await expect(composer(page)).toBeFocused();
  });

  test("a message's time is machine-readable and current", async ({ page }) => {
    const channel = uniqueChannel('time');
    await chooseName(page, `Clock ${uniqueSuffix()}`);
    await createChannel(page, channel);

    const text = `what time is it ${uniqueSuffix()}`;
    await sendMessage(page, text);

    const time = messageWithText(page, text).locator('time');
    await expect(time).toHaveAttribute('datetime', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/);
    const datetime = await time.getAttribute('datetime');
    const sentAt = Date.parse(datetime ?? '');
    expect(Number.isNaN(sentAt), `datetime "${datetime}" should parse as a date`).toBe(false);
    expect(Math.abs(Date.now() - sentAt)).toBeLessThan(5 * 60_000);
    // Something human-readable is shown too.
    await expect(time).not.toHaveText('');
  });
});
