import { test, expect, chooseName, openChannel, sendMessage, messageLog, uniqueSuffix, waitForHydration } from './helpers';

test.describe('security', () => {
  test('the app hydrates and chats under its Content-Security-Policy, with no violation', async ({
    page,
  }) => {
    const violations: string[] = [];
    page.on('console', (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) violations.push(msg.text());
    });
    const response = await page.goto('/');
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("'nonce-");
    expect(csp).toContain("frame-ancestors 'none'");
    await waitForHydration(page);
    await chooseName(page, `Csp ${uniqueSuffix()}`);
    await openChannel(page, 'general');
    const text = `under the policy ${uniqueSuffix()}`;
    await sendMessage(page, text);
    await expect(messageLog(page).getByText(text)).toBeVisible();
    expect(violations).toEqual([]);
  });

  test('signing out starts again as a new person and the old identity is gone', async ({
    page,
  }) => {
    const name = `Leaving ${uniqueSuffix()}`;
    await chooseName(page, name);
    await openChannel(page, 'general');
    await expect(page.getByTestId('me-name')).toHaveText(name);
    const before = await page.context().cookies();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await waitForHydration(page);
    await expect(page.getByRole('textbox', { name: 'Display name', exact: true })).toBeVisible();
    const after = await page.context().cookies();
    const token = (cookies: typeof before) => cookies.find((c) => c.name === 'flack_session')?.value;
    expect(token(after)).not.toEqual(token(before));
  });
});
