// On a phone the conversation list folds behind a "Conversations" button, so the messages get
// the screen; on a wide screen the list is always there.
import {
  test,
  expect,
  channelHeading,
  channelLink,
  channelNav,
  chooseName,
  composer,
  conversationsMenu as menuButton,
  escapeRegExp,
  uniqueChannel,
  uniqueSuffix,
} from './helpers';
import type { Page } from '@playwright/test';

const phone = { width: 390, height: 800 };

/**
 * What the browser tells assistive technology about the menu button: its role and whether it
 * is expanded (Chromium's accessibility tree, through the DevTools protocol).
 */
async function menuAccessibility(page: Page): Promise<{ role?: string; expanded?: boolean }> {
  const cdp = await page.context().newCDPSession(page);
  try {
    const { nodes } = await cdp.send('Accessibility.getFullAXTree');
    const node = nodes.find((n) => !n.ignored && n.name?.value === 'Conversations');
    const expanded = node?.properties?.find((p) => p.name === 'expanded')?.value.value;
    return { role: node?.role?.value, expanded: expanded as boolean | undefined };
  } finally {
    await cdp.detach();
  }
}

test.describe('the conversations menu', () => {
  test('on a phone the list folds into a menu button that opens it and closes on a pick', async ({
    page,
  }) => {
    await page.setViewportSize(phone);
    await chooseName(page, `Menu ${uniqueSuffix()}`);

    // Folded: a button, no list; the page is the channel's.
    await expect(menuButton(page)).toBeVisible();
    await expect(channelNav(page)).toBeHidden();
    await expect(page.getByLabel('Channel name')).toBeHidden();
    expect(await menuAccessibility(page)).toEqual({ role: 'DisclosureTriangle', expanded: false });

    // Opened: the channels and the create form.
    await menuButton(page).click();
    await expect(channelNav(page)).toBeVisible();
    await expect(channelLink(page, 'general')).toBeVisible();
    expect(await menuAccessibility(page)).toEqual({ role: 'DisclosureTriangle', expanded: true });

    // Creating a channel opens it and folds the menu, leaving the screen to the messages.
    const channel = uniqueChannel('menu');
    await page.getByLabel('Channel name').fill(channel);
    await page.getByRole('button', { name: 'Create channel' }).click();
    await expect(page).toHaveURL(new RegExp(`/c/${escapeRegExp(channel)}$`));
    await expect(channelHeading(page, channel)).toBeInViewport();
    await expect(channelNav(page)).toBeHidden();
    await expect(composer(page)).toBeInViewport();
    expect((await menuAccessibility(page)).expanded).toBe(false);

    // Picking a channel from the menu does the same.
    await menuButton(page).click();
    await channelLink(page, 'general').click();
    await expect(channelHeading(page, 'general')).toBeVisible();
    await expect(channelNav(page)).toBeHidden();
    await expect(menuButton(page)).toBeVisible();

    // The keyboard opens it too.
    await menuButton(page).focus();
    await page.keyboard.press('Enter');
    await expect(channelNav(page)).toBeVisible();
  });

  test('on a wide screen the list is always shown and there is no menu button', async ({ page }) => {
    await page.setViewportSize({ width: 1280, height: 720 });
    await chooseName(page, `Wide ${uniqueSuffix()}`);
    await expect(channelNav(page)).toBeVisible();
    await expect(channelLink(page, 'general')).toBeVisible();
    await expect(menuButton(page)).toBeHidden();
  });
});
