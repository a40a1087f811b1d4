// Export-VDisk (issue 12): serves the guest view of images over NBD (the engine's NbdServer) on 127.0.0.1 and/or a
// Unix socket, like qemu-nbd. Read-only by default (any number of clients); -Writable opens the image for writing
// with QEMU's locks and allows one client. The export runs in the background of the session until Stop-VDiskExport
// or the end of the process; -Wait serves in the foreground until Ctrl+C (or SIGTERM) and then stops it.
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Nbd;

namespace VDisk.PowerShell.Commands;

/// <summary>Serves disk images over the NBD protocol.</summary>
[Cmdlet(VerbsData.Export, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskExport))]
public sealed class ExportVDiskCommand : EncryptedImageInputCmdletBase
{
    /// <summary>Error id for a TCP port another program (or another export) already listens on.</summary>
    public const string PortInUseId = "PortInUse";
    /// <summary>Error id for a listener that cannot be opened for another reason.</summary>
    public const string ListenFailedId = "ListenFailed";

    /// <summary>TCP port on 127.0.0.1; 0 picks a free one. Default 10809 (NBD's port) unless only -UnixSocket is given.</summary>
    [Parameter]
    [ValidateRange(0, 65535)]
    public int Port { get; set; } = NbdServer.DefaultPort;

    /// <summary>Also (or, without -Port, only) listen on this Unix socket path.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? UnixSocket { get; set; }

    /// <summary>The export name clients ask for; by default the empty (default) name.</summary>
    [Parameter]
    [AllowEmptyString]
    public string Name { get; set; } = "";

    /// <summary>Let the client write (one client at a time); the image is opened writable and locked as QEMU locks it.</summary>
    [Parameter]
    public SwitchParameter Writable { get; set; }

    /// <summary>Format of the images; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Serve in the foreground until Ctrl+C, then stop the export.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Starts one export per image.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (!ShouldProcess(fullPath, Writable ? "Export over NBD, writable" : "Export over NBD, read-only")) return;
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (ImageFormat?)null;
        bool tcp = UnixSocket == null || IsBound(nameof(Port));
        string? socketPath = UnixSocket == null ? null : ResolveLiteralPath(UnixSocket);
        if (UnixSocket != null && socketPath == null) return;

        object? outcome = Attempt<object>(fullPath, () =>
        {
            try { return Start(fullPath, format, tcp, socketPath); }
            catch (SocketException e) { return e; } // reported below with its own error id
        });
        if (outcome is SocketException failure)
        {
            bool inUse = failure.SocketErrorCode == SocketError.AddressAlreadyInUse;
            string where = tcp ? $"port {Port}" : $"socket {socketPath}";
            WriteError(new ErrorRecord(failure, inUse ? PortInUseId : ListenFailedId, ErrorCategory.ResourceUnavailable, fullPath)
            {
                ErrorDetails = new ErrorDetails(inUse
                    ? $"{fullPath}: cannot export on {where}: it is in use. Choose another -Port, or -Port 0 for a free one."
                    : $"{fullPath}: cannot listen on {where}: {failure.Message}"),
            });
            return;
        }
        if (outcome is not VDiskExport export) return;
        WriteObject(export);
        if (Wait) Serve(export);
        else ExportRegistry.Add(export);
    }

    private VDiskExport Start(string fullPath, ImageFormat? format, bool tcp, string? socketPath)
    {
        var disk = ImageChain.Open(fullPath, new OpenOptions { Writable = Writable, Format = format });
        NbdServer server;
        try
        {
            // Refused now rather than failing every client read later.
            for (var layer = disk; layer != null; layer = layer.Backing)
                if (layer.Driver is VDisk.Engine.Formats.Qcow2.Qcow2Driver { IsLocked: true })
                    throw new VDiskException(VDiskErrorKind.PassphraseRequired, layer.Path,
                        $"{layer.Path} is encrypted; give its passphrase (-Passphrase or -PassphraseFile) to export it.");
            server = new NbdServer(new[] { new NbdExport(Name, disk, Writable, fullPath) });
        }
        catch
        {
            disk.Dispose();
            throw;
        }
        try
        {
            // The server outlives this command: its tasks must not carry the command's warning listener along.
            using var noFlow = ExecutionContext.SuppressFlow();
            int? port = tcp ? server.ListenTcp(IPAddress.Loopback, Port).Port : null;
            if (socketPath != null) server.ListenUnix(socketPath);
            return new VDiskExport(server, fullPath, Name, port, socketPath, Writable, FormatProbe.Name(disk.Format));
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    // -Wait: serve until Ctrl+C (StopProcessing) or SIGTERM, then stop the export before returning.
    private void Serve(VDiskExport export)
    {
        using var terminated = new ManualResetEventSlim();
        PosixSignalRegistration? sigterm = null;
        try
        {
            sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ =>
            {
                // Stopped (or waited for, when the foreground thread got there first) before the default action ends the process.
                try { ExportRegistry.Stop(export); }
                finally
                {
                    try { terminated.Set(); }
                    catch (ObjectDisposedException) { } // -Wait already returned
                }
            });
        }
        catch (PlatformNotSupportedException)
        {
        }
        try
        {
            WaitHandle.WaitAny(new[] { Cancellation.WaitHandle, terminated.WaitHandle });
        }
        finally
        {
            sigterm?.Dispose();
            ExportRegistry.Stop(export);
        }
        if (Cancellation.IsCancellationRequested) throw new PipelineStoppedException();
    }
}
