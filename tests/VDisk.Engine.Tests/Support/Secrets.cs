// Passphrases for encryption tests, on both sides: QEMU's --object secret / --image-opts arguments, and the
// engine's ImageKeys scope. Key slots are made with a tiny iter-time so PBKDF2 costs milliseconds.
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Tests.Support;

public static class Secrets
{
    public const string Pw = "correct horse 1";
    public const string Pw2 = "battery staple 2";
    public static readonly TimeSpan Fast = TimeSpan.FromMilliseconds(10);

    /// <summary>`--object secret,id=ID,data=PW`.</summary>
    public static string[] Object(string id, string pw) => new[] { "--object", $"secret,id={id},data={pw}" };

    /// <summary>`--image-opts` text for an encrypted qcow2 with secret <paramref name="id"/>.</summary>
    public static string Opts(string path, string id = "s") => $"driver=qcow2,file.filename={path},encrypt.key-secret={id}";

    public static string RawOpts(string path) => $"driver=raw,file.filename={path}";

    /// <summary>Puts the given passphrases in scope (ImageKeys) until disposed, then zeroes them.</summary>
    public static IDisposable Use(params string[] passphrases)
    {
        var keys = passphrases.Select(p => Passphrase.FromChars(p)).ToArray();
        var scope = ImageKeys.Use(keys);
        return new Both(scope, keys);
    }

    public static Passphrase Key(string pw) => Passphrase.FromChars(pw);

    /// <summary>A new LUKS qcow2 made by the engine (slot 0 holds <paramref name="pw"/>).</summary>
    public static string CreateEncrypted(string path, long size, string pw = Pw, LuksCipherSpec? spec = null, int clusterSize = 65536,
        string? backing = null)
    {
        using var key = Key(pw);
        CreateImage.Run(path, new CreateOptions
        {
            Size = backing is null ? size : null,
            ClusterSize = clusterSize,
            BackingPath = backing,
            BackingFormat = backing is null ? null : ImageFormat.Qcow2,
            Encryption = new LuksFormatOptions { Spec = spec ?? LuksCipherSpec.QemuDefault, IterTime = Fast },
            Passphrase = key,
        });
        return path;
    }

    /// <summary>qemu-img create of a LUKS qcow2 with secret PW and extra -o options.</summary>
    public static void QemuCreate(string path, long size, string pw = Pw, string extra = "", params string[] more)
    {
        var args = new List<string> { "create", "-q", "-f", "qcow2" };
        args.AddRange(Object("s", pw));
        args.AddRange(more);
        args.Add("-o");
        args.Add("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10" + (extra.Length > 0 ? "," + extra : ""));
        args.Add(path);
        args.Add(size.ToString());
        Qemu.Img(args.ToArray());
    }

    /// <summary>qemu-io on an encrypted qcow2 (secret PW), each command a -c.</summary>
    public static string QemuIo(string path, string pw, params string[] commands)
    {
        var args = new List<string>(Object("s", pw)) { "-t", "writeback" };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        args.Add("--image-opts");
        args.Add(Opts(path));
        return Qemu.Io(args.ToArray());
    }

    /// <summary>qemu-img convert of an encrypted qcow2 to raw.</summary>
    public static void QemuToRaw(string path, string pw, string raw)
    {
        var args = new List<string> { "convert" };
        args.AddRange(Object("s", pw));
        args.AddRange(new[] { "--image-opts", Opts(path), "-O", "raw", raw });
        Qemu.Img(args.ToArray());
    }

    /// <summary>qemu-img check with the secret: exit 0, no corruptions or leaks.</summary>
    public static void AssertQemuCheckClean(string path, string pw)
    {
        var args = new List<string> { "check" };
        args.AddRange(Object("s", pw));
        args.AddRange(new[] { "--image-opts", Opts(path) });
        var (code, output) = Qemu.TryImg(args.ToArray());
        Assert.True(code == 0, $"qemu-img check {path} exited {code}:\n{output}");
        Assert.Contains("No errors were found", output);
    }

    /// <summary>qemu-img compare of an encrypted qcow2 with a raw file: identical.</summary>
    public static void AssertQemuIdentical(string path, string pw, string raw)
    {
        var args = new List<string> { "compare" };
        args.AddRange(Object("s", pw));
        args.AddRange(new[] { "--image-opts", Opts(path), RawOpts(raw) });
        var (code, output) = Qemu.TryImg(args.ToArray());
        Assert.True(code == 0, $"qemu-img compare {path} {raw} exited {code}: {output}");
    }

    private sealed class Both(IDisposable scope, Passphrase[] keys) : IDisposable
    {
        public void Dispose()
        {
            scope.Dispose();
            foreach (var k in keys) k.Dispose();
        }
    }
}
