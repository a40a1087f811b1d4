// Encrypted backup sets' keys (BackupEncryption, BackupKey) and keyed block hashes: the hash of guest data is an HMAC
// under the set's key, unlike the plain SHA-256 and unlike another set's; the key check tells the right passphrase
// from a wrong one; and through the engine, an encrypted set's points are LUKS images whose hash files differ from a
// clear set's for the same content, and whose manifest tampering with the key check is found.
using System.Security.Cryptography;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class BackupEncryptionTests
{
    private static readonly LuksFormatOptions FastLuks = new() { IterTime = TimeSpan.FromMilliseconds(10) };

    [Fact]
    public void KeyedBlockHashIsAnHmacThatDependsOnTheKey()
    {
        var block = new byte[BlockHash.BlockSize];
        RandomNumberGenerator.Fill(block);
        byte[] key1 = RandomNumberGenerator.GetBytes(32), key2 = RandomNumberGenerator.GetBytes(32);
        var plain = BlockHash.Of(block);
        var keyed = BlockHash.Of(block, key1);
        Assert.NotEqual(plain, keyed);
        Assert.NotEqual(keyed, BlockHash.Of(block, key2));
        Assert.Equal(BlockHash.Read(HMACSHA256.HashData(key1, block)), keyed);
        // a short last block is padded with zeroes before the HMAC, as before the plain hash
        var padded = new byte[BlockHash.BlockSize];
        block.AsSpan(0, 1000).CopyTo(padded);
        Assert.Equal(BlockHash.Read(HMACSHA256.HashData(key1, padded)), BlockHash.Of(block.AsSpan(0, 1000), key1));
        Assert.Equal(BlockHash.Zero, BlockHash.Of(new byte[4096], key1)); // zeroes keep the marker value
    }

    [Fact]
    public void KeyCheckTellsTheSetsPassphraseFromOthers()
    {
        using var right = Passphrase.FromChars("right one");
        using var wrong = Passphrase.FromChars("wrong one");
        var (record, created) = BackupKey.Create(FastLuks, right);
        using (created)
        {
            Assert.Equal("aes-256-xts-plain64", record.Cipher);
            Assert.DoesNotContain("right one", System.Text.Json.JsonSerializer.Serialize(record));
            using var unlocked = BackupKey.Unlock(record, new[] { wrong, right }, "/set");
            Assert.Same(right, unlocked.Passphrase);
            Assert.Equal(created.HashKey, unlocked.HashKey);
        }
        var e = Assert.Throws<VDiskException>(() => BackupKey.Unlock(record, new[] { wrong }, "/set"));
        Assert.Equal(VDiskErrorKind.WrongPassphrase, e.Kind);
        Assert.DoesNotContain("wrong one", e.Message);
        Assert.Equal(VDiskErrorKind.PassphraseRequired, Assert.Throws<VDiskException>(() => BackupKey.Unlock(record, Array.Empty<Passphrase>(), "/set")).Kind);
        var damaged = record with { HashKeySalt = "not hex" };
        Assert.Equal(VDiskErrorKind.Corrupt, Assert.Throws<VDiskException>(() => BackupKey.Unlock(damaged, new[] { right }, "/set")).Kind);
    }

    [Fact]
    public void DisposeZeroesTheHashKey()
    {
        using var passphrase = Passphrase.FromChars("p");
        var (_, key) = BackupKey.Create(FastLuks, passphrase);
        var bytes = key.HashKey;
        Assert.Contains(bytes, b => b != 0);
        key.Dispose();
        Assert.All(bytes, b => Assert.Equal(0, b));
    }

    [Fact]
    public void AnEncryptedSetsPointsAreLuksImagesAndItsHashesAreKeyed()
    {
        using var dir = new TempFolder();
        string source = dir.File("vm.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", source, "8M");
        Qemu.Io("-c", "write -P 0x5a 0 2M", source);
        using var passphrase = Passphrase.FromChars("set passphrase");
        var clear = BackupImage.Run(source, dir.File("clear"), new BackupOptions()).Point;
        var encrypted = BackupImage.Run(source, dir.File("enc"), new BackupOptions { Encryption = FastLuks, Passphrase = passphrase }).Point;
        Assert.True(encrypted.Encrypted);
        Assert.Equal("None", encrypted.Compression);
        Assert.True(Qemu.Info(Path.Combine(dir.File("enc"), encrypted.File)).GetProperty("encrypted").GetBoolean());
        var clearHashes = BlockHashFile.Read(Path.Combine(dir.File("clear"), clear.HashFile));
        var keyedHashes = BlockHashFile.Read(Path.Combine(dir.File("enc"), encrypted.HashFile));
        Assert.Equal(clearHashes.Select(e => e.Block), keyedHashes.Select(e => e.Block));
        Assert.All(clearHashes.Zip(keyedHashes), pair => Assert.NotEqual(pair.First.Hash, pair.Second.Hash));
        // the next backup needs the passphrase, from the options or from the scope
        var e = Assert.Throws<VDiskException>(() => BackupImage.Run(source, dir.File("enc"), new BackupOptions { Time = DateTimeOffset.UtcNow.AddMinutes(1) }));
        Assert.Equal(VDiskErrorKind.PassphraseRequired, e.Kind);
        using (ImageKeys.Use(new[] { passphrase }))
            Assert.True(BackupImage.Run(source, dir.File("enc"), new BackupOptions { Time = DateTimeOffset.UtcNow.AddMinutes(2) }).Point.Encrypted);
    }
}
