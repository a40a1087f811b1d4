// Key slot changes interrupted by power loss at every point the simulator (PowerLossStorage) can make: after any
// subset, in any order, of the writes since the last flush, including torn multi-sector writes. Whatever the crash,
// the original passphrase still opens the volume to the same master key; a slot being added is either inactive or
// opens fully with the new passphrase; a slot being removed is either still whole and opens, or inactive.
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;
using static VDisk.Engine.Tests.Crypto.LuksVolumeTests;

namespace VDisk.Engine.Tests.Crypto;

public class LuksPowerLossTests
{
    private static bool? TryOpen(IStorage storage, string passphrase)
    {
        using var p = P(passphrase);
        try
        {
            using var c = Luks.Unlock(storage, 0, new[] { p }, "crash.luks");
            return DecryptsPayload(storage, c);
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.WrongPassphrase) { return null; }
    }

    [Fact]
    public void AnInterruptedAddLeavesTheSlotInactiveOrComplete()
    {
        var recorder = new PowerLossStorage(new MemoryStorage("crash.luks", Volume(second: false).ToArray()));
        using (var first = P("first"))
        using (var added = P("added"))
            Assert.Equal(1, Luks.AddKeySlot(recorder, 0, new[] { first }, added, Fast, null, "crash.luks"));
        // The last write before the last flush is the 4-byte state of slot 1, alone.
        var changes = recorder.Changes;
        Assert.Equal(RecordedChangeKind.Flush, changes[^1].Kind);
        Assert.Equal(new RecordedChange(RecordedChangeKind.Write, 208 + 48, 4), changes[^2]);
        Assert.Equal(RecordedChangeKind.Flush, changes[^3].Kind);

        int images = 0, active = 0;
        foreach (var crash in recorder.CrashImages(new Random(42), 12))
        {
            images++;
            var storage = new MemoryStorage("crash.luks", crash.Bytes);
            Assert.True(TryOpen(storage, "first") == true, $"{crash.Description}: the original passphrase no longer opens the volume");
            bool slotActive = Luks.ReadHeader(storage, 0, "crash.luks").Slots[1].Active;
            var opened = TryOpen(storage, "added");
            if (slotActive)
            {
                active++;
                Assert.True(opened == true, $"{crash.Description}: slot 1 is active but the added passphrase does not open it");
            }
            else Assert.Null(opened);
        }
        Assert.True(images > 10 && active > 0 && active < images, $"{images} crash images, {active} with the slot active");
    }

    [Fact]
    public void AnInterruptedRemoveLeavesTheSlotWholeOrInactive()
    {
        var recorder = new PowerLossStorage(new MemoryStorage("crash.luks", Volume().ToArray()));
        using (var first = P("first"))
        using (var second = P("second"))
            Assert.Equal(new[] { 1 }, Luks.RemoveKeySlots(recorder, 0, new[] { first }, second, null, "crash.luks"));
        // The first write is the 4-byte state of slot 1, flushed alone before anything else changes.
        var changes = recorder.Changes;
        Assert.Equal(new RecordedChange(RecordedChangeKind.Write, 208 + 48, 4), changes[0]);
        Assert.Equal(RecordedChangeKind.Flush, changes[1].Kind);

        int images = 0, active = 0;
        foreach (var crash in recorder.CrashImages(new Random(43), 12))
        {
            images++;
            var storage = new MemoryStorage("crash.luks", crash.Bytes);
            Assert.True(TryOpen(storage, "first") == true, $"{crash.Description}: the remaining passphrase no longer opens the volume");
            bool slotActive = Luks.ReadHeader(storage, 0, "crash.luks").Slots[1].Active;
            var opened = TryOpen(storage, "second");
            if (slotActive)
            {
                active++;
                Assert.True(opened == true, $"{crash.Description}: slot 1 is still active but its material is damaged");
            }
            else Assert.Null(opened);
        }
        Assert.True(images > 10 && active > 0 && active < images, $"{images} crash images, {active} with the slot active");
    }
}
