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
  waitForHydration,
} from './helpers';

test.describe('deleting a message', () => {
  test('only the author can delete a message, and it disappears for everyone', async ({
    newUser,
  }) => {
    const channel = uniqueChannel('del');
    const alice = await newUser(`Alice ${uniqueSuffix()}`);
    await createChannel(alice.page, channel);
    const bob = await newUser(`Bob ${uniqueSuffix()}`);
    await openChannel(bob.page, channel);

    const text = `delete me later ${uniqueSuffix()}`;
    await sendMessage(alice.page, text);

    const alicesView = messageWithText(alice.page, text);
    const bobsView = messageWithText(bob.page, text);
    await expect(alicesView).toHaveCount(1);
    await expect(bobsView).toHaveCount(1);

    // Only the author is offered a delete button.
    const deleteButton = alicesView.getByRole('button', { name: 'Delete message' });
    await expect(deleteButton).toBeVisible();
    await expect(bobsView.getByRole('button', { name: 'Delete message' })).toHaveCount(0);

    // Bob cannot delete Alice's message by calling the server directly.
    const messageId = await bobsView.getAttribute('data-id');
    expect(messageId, 'li.message carries its id in data-id').toBeTruthy();
    const refused = await bob.page.request.post('/api/delete_message', {
      form: { message_id: messageId! },
      maxRedirects: 0,
    });
    expect(refused.ok(), `bob's delete answered ${refused.status()}`).toBe(false);
    expect(refused.status()).toBeGreaterThanOrEqual(400);
    expect(refused.status()).toBeLessThan(500);

    await bob.page.reload();
    await waitForHydration(bob.page);
    await expect(messageWithText(bob.page, text)).toHaveCount(1);
    await expect(alicesView).toHaveCount(1);

    // Alice deletes it: it disappears live for both of them.
    await deleteButton.click();
    await expect(alice.page.locator(`li.message[data-id="${messageId}"]`)).toHaveCount(0);
    await expect(bob.page.locator(`li.message[data-id="${messageId}"]`)).toHaveCount(0);
    await expect(bobsView).toHaveCount(0);

    // And it stays deleted.
    await bob.page.reload();
    await waitForHydration(bob.page);
    await expect(messageLog(bob.page)).toBeVisible();
    await expect(messageWithText(bob.page, text)).toHaveCount(0);
  });
});
