// A message one sends shows at once, then becomes the stored message; a connection that drops
// before the acknowledgement loses nothing and doubles nothing; one that cannot be delivered
// says so and can be sent again.
import type { Page, WebSocketRoute } from '@playwright/test';
import {
  test,
  expect,
  createChannel,
  messageLog,
  messageWithText,
  openChannel,
  sendMessage,
  uniqueChannel,
  uniqueSuffix,
} from './helpers';

/** The user's own messages on their way (not yet shown back by the server). */
function pendingItems(page: Page) {
  return messageLog(page).locator('li.pending');
}

/** The header's live-connection indicator. */
function connectionStatus(page: Page) {
  return page.locator('header .status');
}

/** A frame's JSON, or null when it is not JSON text. */
function parseFrame(frame: string | Buffer): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(frame.toString());
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * Sits between the page and the server on every `/ws` connection the page opens from now on.
 * Client frames always go through (and are recorded per connection); each server frame is
 * handed to `onServerFrame`, which forwards it with `deliver()` or not.
 */
async function interceptSocket(
  page: Page,
  onServerFrame: (
    frame: string | Buffer,
    deliver: () => void,
    connection: number,
    ends: { page: WebSocketRoute; server: WebSocketRoute },
  ) => void,
): Promise<{ clientFrames: Record<string, unknown>[][] }> {
  const clientFrames: Record<string, unknown>[][] = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const connection = clientFrames.length;
    clientFrames.push([]);
    const server = ws.connectToServer();
    ws.onMessage((frame) => {
      const parsed = parseFrame(frame);
      if (parsed) clientFrames[connection].push(parsed);
      server.send(frame);
    });
    server.onMessage((frame) => onServerFrame(frame, () => ws.send(frame), connection, { page: ws, server }));
  });
  return { clientFrames };
}

test.describe('message delivery', () => {
  test('a message shows at once as sending and turns into the sent message', async ({ newUser }) => {
    const channel = uniqueChannel('pending');
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    await createChannel(alice.page, channel);

    // From the next page load on, the server's frames can be held back.
    let holding = false;
    const held: Array<() => void> = [];
    const { clientFrames } = await interceptSocket(alice.page, (_frame, deliver) => {
      if (holding) held.push(deliver);
      else deliver();
    });
    await openChannel(alice.page, channel);
    await expect(connectionStatus(alice.page)).toHaveAttribute('data-state', 'online');

    holding = true;
    const text = `on its way ${uniqueSuffix()}`;
    await sendMessage(alice.page, text);

    // Shown at once, while the server has not answered yet.
    const pending = pendingItems(alice.page).filter({ has: alice.page.locator('.body', { hasText: text }) });
    await expect(pending).toHaveCount(1);
    await expect(pending).toHaveAttribute('data-state', 'sending');
    await expect(pending.locator('.body')).toHaveText(text);
    await expect(pending).toBeVisible();
    await expect(messageWithText(alice.page, text)).toHaveCount(0);
    // Below the stored messages, in the log.
    await expect(messageLog(alice.page).locator('li').last()).toHaveClass(/\bpending\b/);

    // It went over the socket, tagged with the same client id as the item on screen.
    const clientId = await pending.getAttribute('data-client-id');
    expect(clientId, 'the pending item carries its client id').toBeTruthy();
    await expect
      .poll(() => clientFrames.flat().filter((f) => f.type === 'send'))
      .toEqual([expect.objectContaining({ type: 'send', body: text, client_id: clientId })]);

    // The server's answer arrives: the pending copy becomes the stored message.
    holding = false;
    for (const deliver of held.splice(0)) deliver();
    const sent = messageWithText(alice.page, text);
    await expect(sent).toHaveCount(1);
    await expect(sent.locator('.author')).toHaveText(alice.name);
    await expect(pendingItems(alice.page)).toHaveCount(0);
    await expect(messageLog(alice.page).locator('li.message')).toHaveCount(1);
  });

  test('a connection dropped between send and acknowledgement still delivers the message exactly once', async ({
    newUser,
  }) => {
    const channel = uniqueChannel('noack');
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    await createChannel(alice.page, channel);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    await openChannel(bob.page, channel);

    // On the first connection, the server's confirmation is lost with the connection itself:
    // the ack, or the channel's copy of the message, whichever comes first (both say "stored").
    const text = `exactly once ${uniqueSuffix()}`;
    let dropped = false;
    const { clientFrames } = await interceptSocket(alice.page, (frame, deliver, connection, ends) => {
      const event = parseFrame(frame);
      const confirms =
        event?.type === 'ack' ||
        (event?.type === 'message' && (event.message as { body?: string } | undefined)?.body === text);
      if (connection === 0 && (dropped || confirms)) {
        if (!dropped) {
          dropped = true;
          void ends.page.close().catch(() => {});
          void ends.server.close().catch(() => {});
        }
        return;
      }
      deliver();
    });
    await openChannel(alice.page, channel);
    const status = connectionStatus(alice.page);
    await expect(status).toHaveAttribute('data-state', 'online');

    await sendMessage(alice.page, text);

    // The drop happened, and the page connected again on its own.
    await expect.poll(() => dropped).toBe(true);
    await expect.poll(() => clientFrames.length).toBeGreaterThanOrEqual(2);
    await expect(status).toHaveAttribute('data-state', 'online');

    // The message was sent again on the new connection, under the same client id.
    const firstSend = clientFrames[0].find((f) => f.type === 'send');
    expect(firstSend, 'the message went out on the first connection').toBeTruthy();
    await expect
      .poll(() => clientFrames.slice(1).flat().filter((f) => f.type === 'send'))
      .toContainEqual(expect.objectContaining({ body: text, client_id: firstSend?.client_id }));

    // Alice sees it once, no longer pending; so does Bob.
    await expect(messageWithText(alice.page, text)).toHaveCount(1);
    await expect(pendingItems(alice.page)).toHaveCount(0);
    await expect(messageWithText(bob.page, text)).toHaveCount(1);
    // Nothing else trickles in late.
    await alice.page.waitForTimeout(1_000);
    await expect(messageWithText(alice.page, text)).toHaveCount(1);
    await expect(messageWithText(bob.page, text)).toHaveCount(1);

    // And it was stored once.
    await alice.page.reload();
    await expect(messageLog(alice.page).locator('li.message')).toHaveCount(1);
    await expect(messageWithText(alice.page, text)).toHaveCount(1);
    await expect(pendingItems(alice.page)).toHaveCount(0);
  });

  test('a message that cannot be delivered shows failed with a retry that works', async ({ newUser }) => {
    const channel = uniqueChannel('retry');
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    await createChannel(alice.page, channel);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    await openChannel(bob.page, channel);
    const status = connectionStatus(alice.page);
    await expect(status).toHaveAttribute('data-state', 'online');

    await alice.context.setOffline(true);
    await expect(status).not.toHaveAttribute('data-state', 'online');

    const text = `sent while offline ${uniqueSuffix()}`;
    await sendMessage(alice.page, text);

    const failed = pendingItems(alice.page).filter({ has: alice.page.locator('.body', { hasText: text }) });
    await expect(failed).toHaveCount(1);
    await expect(failed).toHaveAttribute('data-state', 'failed');
    await expect(failed.getByRole('alert')).toContainText('Not sent');
    const retry = failed.getByRole('button', { name: 'Retry' });
    await expect(retry).toBeVisible();
    await expect(messageWithText(alice.page, text)).toHaveCount(0);

    await alice.context.setOffline(false);
    await expect(status).toHaveAttribute('data-state', 'online');
    await retry.click();

    await expect(messageWithText(alice.page, text)).toHaveCount(1);
    await expect(pendingItems(alice.page)).toHaveCount(0);
    await expect(messageWithText(bob.page, text)).toHaveCount(1);
    await expect(messageLog(bob.page).locator('li.message')).toHaveCount(1);

    // Stored once.
    await alice.page.reload();
    await expect(messageWithText(alice.page, text)).toHaveCount(1);
    await expect(messageLog(alice.page).locator('li.message')).toHaveCount(1);
  });
});
