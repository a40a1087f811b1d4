// Live VMs are reached through libvirt's own client, virsh (DESIGN.md "Operations": "Live VMs are reached through
// libvirt"): list, dumpxml --inactive (the definition the next start uses), define --validate, domstate, and a restart
// as shutdown (ACPI), wait, start; destroy (power off) only when asked to.
using System.Diagnostics;
using VDisk.Engine.Core;

namespace VDisk.Engine.Libvirt;

/// <summary>Runs virsh against one libvirt connection.</summary>
public sealed class Virsh
{
    /// <summary>The connection used when none is given and LIBVIRT_DEFAULT_URI is not set.</summary>
    public const string DefaultUri = "qemu:///system";

    /// <summary>Uses <paramref name="uri"/>, else LIBVIRT_DEFAULT_URI, else qemu:///system.</summary>
    public Virsh(string? uri = null)
    {
        Uri = !string.IsNullOrEmpty(uri) ? uri : Environment.GetEnvironmentVariable("LIBVIRT_DEFAULT_URI") is { Length: > 0 } env ? env : DefaultUri;
    }

    /// <summary>The libvirt connection URI.</summary>
    public string Uri { get; }

    /// <summary>The names of every defined or running domain (virsh list --all --name).</summary>
    public IReadOnlyList<string> ListDomains() =>
        Run(null, "list", "--all", "--name").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>The domain's persistent definition (dumpxml --inactive), which the next start uses.</summary>
    public string DumpXml(string domain) => Run(domain, "dumpxml", "--inactive", domain);

    /// <summary>Defines (replaces) a domain from <paramref name="xml"/>, validated against libvirt's schema first.</summary>
    public void Define(string xml)
    {
        string file = Path.Combine(Path.GetTempPath(), $"vdisk-define-{Guid.NewGuid():N}.xml");
        File.WriteAllText(file, xml);
        try
        {
            Run(null, "define", "--validate", file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>True when the domain is running (or paused): it has a QEMU process.</summary>
    public bool IsActive(string domain) => Run(domain, "domstate", domain).Trim() != "shut off";

    /// <summary>
    /// Stops the domain and starts it again, so its definition applies: an ACPI shutdown, waiting up to
    /// <paramref name="timeout"/> for the guest; then, when <paramref name="force"/>, a power-off (virsh destroy), else
    /// an error that leaves it running as it was.
    /// </summary>
    public void Restart(string domain, TimeSpan timeout, bool force, CancellationToken cancel)
    {
        if (IsActive(domain))
        {
            if (timeout > TimeSpan.Zero) Run(domain, "shutdown", domain);
            var deadline = DateTime.UtcNow + timeout;
            while (IsActive(domain))
            {
                if (DateTime.UtcNow >= deadline)
                {
                    if (!force)
                        throw new VDiskException(VDiskErrorKind.LibvirtFailed, null,
                            $"Domain '{domain}' did not shut down within {timeout.TotalSeconds:0} s (its guest did not act on the ACPI request), so it was not restarted " +
                            "and runs with its old settings; the new definition applies at its next start. Use -Force to power it off after the timeout.");
                    Run(domain, "destroy", domain);
                    break;
                }
                cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(200));
                cancel.ThrowIfCancellationRequested();
            }
        }
        Run(domain, "start", domain);
    }

    /// <summary>Runs virsh with the connection and <paramref name="arguments"/>; its output, or a LibvirtFailed / DomainNotFound error.</summary>
    public string Run(string? domain, params string[] arguments) => Run(detached: false, domain, arguments);

    /// <summary>
    /// Like <see cref="Run(string?, string[])"/>, but virsh runs in a session of its own (setsid, where it exists), so
    /// a Ctrl+C at the terminal does not reach it: for the steps that must finish once begun (a block commit).
    /// </summary>
    public string RunDetached(string? domain, params string[] arguments) => Run(detached: true, domain, arguments);

    /// <summary>The domain's state as domstate prints it (running, paused, shut off, crashed ...).</summary>
    public string State(string domain) => Run(domain, "domstate", domain).Trim();

    /// <summary>The domain's live XML (dumpxml): the disks QEMU has open now; for a shut-off domain, its definition.</summary>
    public string DumpLiveXml(string domain) => Run(domain, "dumpxml", domain);

    private const string SetSid = "/usr/bin/setsid";

    private string Run(bool detached, string? domain, string[] arguments)
    {
        detached &= File.Exists(SetSid);
        var start = new ProcessStartInfo(detached ? SetSid : "virsh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (detached)
        {
            start.ArgumentList.Add("--wait");
            start.ArgumentList.Add("virsh");
        }
        start.ArgumentList.Add("-q");
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(Uri);
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new VDiskException(VDiskErrorKind.LibvirtFailed, null, $"virsh could not be run ({e.Message}); install libvirt-clients.", e);
        }
        using (process)
        {
            var error = process.StandardError.ReadToEndAsync();
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode == 0) return output;
            string message = error.Result.Trim();
            if (domain is not null && (message.Contains("failed to get domain", StringComparison.Ordinal) || message.Contains("Domain not found", StringComparison.Ordinal)))
                throw new VDiskException(VDiskErrorKind.DomainNotFound, null, $"No domain '{domain}' on {Uri}: {message}");
            throw new VDiskException(VDiskErrorKind.LibvirtFailed, null, $"virsh -c {Uri} {string.Join(' ', arguments)} failed: {message}");
        }
    }
}
